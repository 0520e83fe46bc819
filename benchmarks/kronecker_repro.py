"""Reproduce paper 002 (Kronecker decomposition for KGE) on UMLS and Kinship, plus squared versions.

Protocol of the paper (section 5): reciprocal relations (every ``(h, r, t)`` also trains
``(t, r⁻¹, h)``), 1-vs-all over tails, Adam, lr 0.01, batch 1024, seed 1, no regulariser; filtered
MRR/Hits over tails of the test triples and of their reciprocals (so both directions). The loss
(``--loss``): ``bce`` is the paper's (eq. 1-2: sigmoid binary cross-entropy averaged over all
entities, with its binary per-entity label smoothing and label relaxation,
:func:`circuitkg.train.binary.binary_one_vs_all`); ``ce`` the softmax cross-entropy over tails with
softmax label smoothing / relaxation (:mod:`circuitkg.train.label_relaxation`). ``--batch-norm``
adds the paper's batch normalisation of the subject and relation embeddings, with statistics over
the whole table (:class:`~circuitkg.params.kronecker.BatchNormTable`, ``batch_norm=`` of
:mod:`circuitkg.compilers.kronecker`). Differences, stated in the results: ``--epochs`` (default
100, the paper 1000); BN over all rows instead of the batch and without the paper's normaliser of
the product ``h ∘ r``; our parameter counts have no padding entity or relation
(``paper_convention`` recomputes the paper's count from the same dimensions, which is how the
dimensions below were identified). Run keys (``ce``, ``ls.1``, ...) name the target of the chosen
loss family: ``ce`` is the plain one-hot loss (softmax or binary), ``ls``/``lr`` its smoothing and
relaxation; the results record ``loss`` and ``batch_norm``.

Experiments (``--experiments``):

* ``table2``: DistMult vs KD-Rel-DistMult vs KD-DistMult, test and train filtered ranking;
* ``table3``: the same with label smoothing / label relaxation, ``α ∈ {.1, .2}``;
* ``table4``: 10% noise: ``int(0.1 |train|)`` triples with uniformly drawn entities and relations
  appended to the (reciprocal) training set, as the paper's framework does;
* ``squared``: the squared (generative) forms trained by maximum likelihood (``mle``) and by
  pseudo-log-likelihood (``pll``) on the original relations, selected by validation MRR (every 10
  epochs, patience 3), with filtered MRR (both directions) and test log-likelihood
  ``mean log p(s, r, o)`` next to that of independent unigrams ``p(s) p(r) p(o)``; and trained
  like the score forms above (reciprocal, tail 1-vs-all on ``log p(o | s, r)``), ranking only.

    python benchmarks/kronecker_repro.py --datasets umls kinship --epochs 100 --out runs/kd.json
    python benchmarks/kronecker_repro.py --loss bce --batch-norm --experiments table2 --out runs/b.json
    python benchmarks/kronecker_repro.py --render runs/kd.json     # markdown tables

Not part of the test suite; about 0.25 s per UMLS epoch and 0.4 s per Kinship epoch on one core.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from circuitkg.compilers.kronecker import BatchNormDistMult
from torch import Tensor

import circuitkg as ckg
from circuitkg.data import KnowledgeGraph, load
from circuitkg.eval import evaluate_ranking, keyword_scorer, mean_log_likelihood
from circuitkg.executor import CompiledCircuit
from circuitkg.train.binary import binary_one_vs_all
from circuitkg.train.config import TrainConfig
from circuitkg.train.label_relaxation import label_relaxation_loss, label_smoothing_cross_entropy
from circuitkg.train.trainer import Trainer, TrainingDivergedError

MODELS = ("distmult", "kd-rel-distmult", "kd-distmult")
#: stored width per model: DistMult d = 289; KD-Rel-DistMult k = 17 (entities k² = 289);
#: KD-DistMult k = 16 (UMLS, D = 256) and k = 20 (Kinship, D = 400), as paper 002's Tables 2-4
RANKS = {
    "umls": {"distmult": 289, "kd-rel-distmult": 17, "kd-distmult": 16},
    "kinship": {"distmult": 289, "kd-rel-distmult": 17, "kd-distmult": 20},
}
#: paper 002, test MRR: Table 2 (ce), Table 3 (ls/lr), Table 4 (noise); Kinship KD-Rel-DistMult at
#: 32,946 parameters (Tables 3-4; Table 2 lists the 45,420-parameter run, MRR .562)
PAPER = {
    "umls": {
        "distmult": {"params": 67915, "ce": (0.517, 0.441, 0.536, 0.659), "train": 0.995,
                     "ls.1": 0.568, "ls.2": 0.548, "lr.1": 0.552, "lr.2": 0.579, "noise": 0.485},
        "kd-rel-distmult": {"params": 42619, "ce": (0.531, 0.432, 0.584, 0.684), "train": 0.996,
                            "ls.1": 0.565, "ls.2": 0.592, "lr.1": 0.543, "lr.2": 0.562,
                            "noise": 0.567},
        "kd-distmult": {"params": 3728, "ce": (0.541, 0.447, 0.598, 0.684), "train": 0.814,
                        "ls.1": 0.592, "ls.2": 0.572, "noise": 0.452},
    },
    "kinship": {
        "distmult": {"params": 46818, "ce": (0.568, 0.500, 0.593, 0.693), "train": 0.919,
                     "ls.1": 0.515, "ls.2": 0.502, "lr.1": 0.567, "lr.2": 0.567, "noise": 0.517},
        "kd-rel-distmult": {"params": 32946, "ce": (0.556, 0.487, 0.580, 0.689), "train": 0.913,
                            "ls.1": 0.500, "ls.2": 0.504, "lr.1": 0.555, "lr.2": 0.555,
                            "noise": 0.505},
        "kd-distmult": {"params": 3200, "ce": (0.599, 0.534, 0.631, 0.709), "train": 0.705,
                        "ls.1": 0.519, "ls.2": 0.486, "noise": 0.586},
    },
}  # fmt: skip
LOSSES = {"ce": ("ce", 0.0), "ls.1": ("ls", 0.1), "ls.2": ("ls", 0.2)}
LOSSES |= {"lr.1": ("lr", 0.1), "lr.2": ("lr", 0.2)}


def paper_convention(name: str, n: int, m: int, k: int) -> int:
    """The paper's parameter count: ``n + 1`` entities, ``2m + 1`` relations, BatchNorm affine
    parameters (3 BN layers of width ``d`` for DistMult/KD-Rel-DistMult, 2 of width ``k`` for
    KD-DistMult). Reproduces every count of its Tables 2-6 from the stored widths."""
    entities, relations = n + 1, 2 * m + 1
    if name == "distmult":
        return (entities + relations + 6) * k
    if name == "kd-rel-distmult":
        return (entities + 6) * k * k + relations * k
    return (entities + relations + 4) * k


def reciprocal(kg: KnowledgeGraph, noise: float = 0.0, seed: int = 1) -> KnowledgeGraph:
    """``kg`` with a relation ``r⁻¹`` per relation and ``(t, r⁻¹, h)`` per triple of every split;
    ``noise`` appends that fraction of uniformly random triples to the reciprocal training set."""
    m = kg.num_relations

    def both(t: Tensor) -> Tensor:
        return torch.cat([t, torch.stack([t[:, 2], t[:, 1] + m, t[:, 0]], dim=1)])

    splits = {s: both(t) for s, t in kg.splits.items()}
    if noise:
        gen = torch.Generator().manual_seed(seed)
        count = int(len(splits["train"]) * noise)
        ents = torch.randint(0, kg.num_entities, (count, 2), generator=gen)
        rels = torch.randint(0, 2 * m, (count,), generator=gen)
        fake = torch.stack([ents[:, 0], rels, ents[:, 1]], dim=1)
        splits["train"] = torch.cat([splits["train"], fake])
    names = kg.id_to_relation + [f"{r}_inverse" for r in kg.id_to_relation]
    return KnowledgeGraph(
        f"{kg.name}-reciprocal",
        kg.entity_to_id,
        kg.id_to_entity,
        {r: i for i, r in enumerate(names)},
        names,
        splits,
    )


#: the binary loss of :func:`binary_one_vs_all` for each target key
BINARY = {"ce": "ce", "ls": "label_smoothing", "lr": "label_relaxation"}


def tail_objective(
    family: str, loss: str, alpha: float
) -> Callable[[CompiledCircuit, Tensor], Tensor]:
    """1-vs-all over tails (the trainer's ``ce`` and ``bce`` do both sides): ``family="ce"``:
    ``loss(log p(· | h, r), t)`` with the softmax losses; ``family="bce"``: the paper's binary loss
    of the scores ``φ(h, r, ·)``, each entity its own sigmoid event, averaged over entities."""
    if family == "bce":

        def binary(compiled: CompiledCircuit, triples: Tensor) -> Tensor:
            scores = compiled.score_all("o", s=triples[:, 0], r=triples[:, 1])
            return binary_one_vs_all(scores, triples[:, 2], BINARY[loss], alpha)

        return binary
    functions = {
        "ce": F.cross_entropy,
        "ls": lambda z, y: label_smoothing_cross_entropy(z, y, alpha),
        "lr": lambda z, y: label_relaxation_loss(z, y, alpha),
    }
    fn = functions[loss]

    def objective(compiled: CompiledCircuit, triples: Tensor) -> Tensor:
        logits = compiled.log_conditional("o", s=triples[:, 0], r=triples[:, 1])
        return fn(logits, triples[:, 2])

    return objective


def make_model(name: str, kg: KnowledgeGraph, rank: int, form: str, batch_norm: bool):
    """The registered model, or with ``batch_norm`` its batch-normalised variant (DistMult's is
    :class:`~circuitkg.compilers.kronecker.BatchNormDistMult`, the KD models take ``batch_norm``)."""
    n, m = kg.num_entities, kg.num_relations
    if batch_norm and name == "distmult":
        return BatchNormDistMult(n, m, rank, form=form)
    extra = {"batch_norm": True} if batch_norm else {}
    return ckg.models.create_model(name, n, m, rank, form=form, **extra)


def ranking(compiled: CompiledCircuit, kg: KnowledgeGraph, split: str, directions) -> dict:
    result = evaluate_ranking(
        keyword_scorer(compiled.score_all),
        kg.split(split),
        known_triples=kg.known_triples(),
        num_entities=kg.num_entities,
        batch_size=1024,
        directions=directions,
    )
    m = result.metrics()
    return {"mrr": m["mrr"], "hits@1": m["hits@1"], "hits@3": m["hits@3"], "hits@10": m["hits@10"]}


def train(
    kg, name, rank, form, objective, epochs, seed, loss_fn=None, eval_every=0, batch_norm=False
):
    """The library's trainer; ``eval_every > 0`` keeps the best validation-MRR parameters and stops
    after 3 evaluations without improvement."""
    config = TrainConfig(
        dataset=kg.name, model=name, form=form, rank=rank, objective=objective, reg="none",
        optimizer="adam", lr=0.01, batch_size=1024, epochs=epochs, eval_every=eval_every,
        patience=3, seed=seed,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = make_model(name, kg, rank, form, batch_norm)
    trainer = Trainer(config, kg, model, progress=False, log=lambda line: None)
    if loss_fn is not None:
        trainer.objective = loss_fn
    start = time.perf_counter()
    result = trainer.fit()
    return result, time.perf_counter() - start


def one_vs_all(
    kg, clean, name, rank, key, epochs, seed, with_train=False, form="score", family="ce",
    batch_norm=False,
) -> dict:  # fmt: skip
    """Train on ``kg`` (reciprocal, maybe noisy) with the ``family`` loss's ``key`` target; rank
    tails of ``clean``'s test (and train)."""
    loss, alpha = LOSSES[key]
    objective = tail_objective(family, loss, alpha)
    result, seconds = train(
        kg, name, rank, form, "ce", epochs, seed, objective, batch_norm=batch_norm
    )
    out = {"params": result.model.num_parameters(), "seconds": seconds,
           "loss": result.state.history[-1]["loss"],
           "test": ranking(result.compiled, clean, "test", ("o",))}  # fmt: skip
    if with_train:
        out["train"] = ranking(result.compiled, clean, "train", ("o",))
    return out


def squared(kg, name, rank, objective, epochs, seed) -> dict:
    """The squared form trained by ``objective`` (``mle`` or ``pll``) on the original relations,
    with validation-MRR model selection."""
    result, seconds = train(kg, name, rank, "squared", objective, epochs, seed, eval_every=10)
    compiled = result.compiled
    with torch.no_grad():
        lls = {s: mean_log_likelihood(compiled.log_prob(kg.split(s))) for s in ("train", "test")}
    return {"params": result.model.num_parameters(), "seconds": seconds,
            "loss": result.state.history[-1]["loss"], "best_epoch": result.state.best_epoch,
            "test_ll": lls["test"], "train_ll": lls["train"],
            "test": ranking(compiled, kg, "test", ("o", "s"))}  # fmt: skip


def independent_ll(kg: KnowledgeGraph) -> float:
    """Test log-likelihood of ``p(s) p(r) p(o)`` from add-one smoothed training counts: the
    reference a joint model has to beat."""
    total = 0.0
    for column, size in ((0, kg.num_entities), (1, kg.num_relations), (2, kg.num_entities)):
        counts = torch.bincount(kg.train[:, column], minlength=size).double() + 1.0
        total += mean_log_likelihood(torch.log(counts / counts.sum())[kg.test[:, column]])
    return total


def run(
    dataset: str, models, experiments: list[str], epochs: int, seed: int, report,
    loss: str = "ce", batch_norm: bool = False, into: list[dict] | None = None,
) -> dict:  # fmt: skip
    """Every experiment of ``experiments`` on ``dataset``; the score-form runs (Tables 2-4) use the
    ``loss`` family (``ce`` or ``bce``) and ``batch_norm``, the squared runs neither. The results
    dict is appended to ``into`` before the first run and filled in as runs finish, so ``report``
    can save partial results."""
    kg = load(dataset)
    clean = reciprocal(kg)
    ranks = RANKS[dataset]
    results: dict = {"dataset": dataset, "epochs": epochs, "seed": seed, "loss": loss,
                     "batch_norm": batch_norm, "runs": {}}  # fmt: skip
    if into is not None:
        into.append(results)
    options = {"family": loss, "batch_norm": batch_norm}
    for name in models:
        k = ranks[name]
        runs = results["runs"].setdefault(name, {"rank": k})
        runs["paper_convention"] = paper_convention(name, kg.num_entities, kg.num_relations, k)
        keys = (["ce"] if "table2" in experiments else []) + (
            ["ls.1", "ls.2", "lr.1", "lr.2"] if "table3" in experiments else []
        )
        for key in keys:
            runs[key] = one_vs_all(clean, clean, name, k, key, epochs, seed, key == "ce", **options)
            report(dataset, name, key, runs[key])
        if "table4" in experiments:
            noisy = reciprocal(kg, noise=0.1, seed=seed)
            runs["noise"] = one_vs_all(noisy, clean, name, k, "ce", epochs, seed, **options)
            report(dataset, name, "noise", runs["noise"])
        if "squared" in experiments:
            runs["squared-ce"] = one_vs_all(
                clean, clean, name, k, "ce", epochs, seed, form="squared"
            )
            report(dataset, name, "squared-ce", runs["squared-ce"])
        for objective in ("mle", "pll") if "squared" in experiments else ():
            key = f"squared-{objective}"
            try:
                runs[key] = squared(kg, name, k, objective, epochs, seed)
            except TrainingDivergedError as error:
                runs[key] = {"diverged": str(error)}
            report(dataset, name, key, runs[key])
    if "squared" in experiments:
        results["independent_test_ll"] = independent_ll(kg)
        print(f"{dataset:8s} p(s)p(r)p(o) baseline  test LL {results['independent_test_ll']:.3f}")
    return results


def print_report(dataset: str, name: str, key: str, r: dict) -> None:
    if "diverged" in r:
        print(f"{dataset:8s} {name:16s} {key:8s} {r['diverged']}", flush=True)
        return
    line = (
        f"{dataset:8s} {name:16s} {key:8s} params {r['params']:6d}  test MRR {r['test']['mrr']:.3f}"
    )
    line += "  H@1/3/10 " + "/".join(f"{r['test'][f'hits@{k}']:.3f}" for k in (1, 3, 10))
    if "train" in r:
        line += f"  train MRR {r['train']['mrr']:.3f}"
    if "test_ll" in r:
        line += f"  test LL {r['test_ll']:.3f} (train {r['train_ll']:.3f}, epoch {r['best_epoch']})"
    print(line + f"  ({r['seconds']:.0f} s, final loss {r['loss']:.3f})", flush=True)


def _cell(ours: float | None, paper: float | None) -> str:
    text = "–" if ours is None else f"{ours:.3f}"
    return text if paper is None else f"{text} ({paper:.3f})"


def render(results: list[dict]) -> str:
    """Markdown tables of the runs in ``results`` next to the paper's numbers (in parentheses)."""
    lines = []
    for res in results:
        ds, runs, epochs = res["dataset"], res["runs"], res["epochs"]
        paper = PAPER[ds]
        lines += [f"### {ds} ({res['epochs']} epochs, seed {res['seed']}, {setting(res)})", ""]
        if any("ce" in r for r in runs.values()):
            lines += [
                "| model | k | params (ours) | paper convention | paper | test MRR | H@1 | H@3 | "
                "H@10 | train MRR |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            for name, r in runs.items():
                if "ce" not in r:
                    continue
                t, p = r["ce"]["test"], paper[name]["ce"]
                hits = [_cell(t[f"hits@{k}"], v) for k, v in zip((1, 3, 10), p[1:], strict=True)]
                lines.append(
                    f"| {name} | {r['rank']} | {r['ce']['params']:,} | {r['paper_convention']:,} | "
                    f"{paper[name]['params']:,} | {_cell(t['mrr'], p[0])} | {' | '.join(hits)} | "
                    f"{_cell(r['ce']['train']['mrr'], paper[name]['train'])} |"
                )
            lines.append("")
        keys = [k for k in ("ce", "ls.1", "ls.2", "lr.1", "lr.2", "noise") if k != "ce"]
        if any(k in r for r in runs.values() for k in keys):
            lines += [
                "| model | CE | LS α=.1 | LS α=.2 | LR α=.1 | LR α=.2 | 10% noise |",
                "|---|---|---|---|---|---|---|",
            ]
            for name, r in runs.items():
                cells = []
                for key in ("ce", *keys):
                    ours = r[key]["test"]["mrr"] if key in r else None
                    ref = paper[name]["ce"][0] if key == "ce" else paper[name].get(key)
                    cells.append(_cell(ours, ref))
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
        squared = [
            (n, o, r.get(f"squared-{o}")) for n, r in runs.items() for o in ("mle", "pll", "ce")
        ]
        if any(r is not None for _, _, r in squared):
            lines += [
                f"Squared forms; independent unigrams p(s)p(r)p(o): test LL "
                f"{res['independent_test_ll']:.3f}.",
                "",
                "| model | objective | params | test LL | train LL | test MRR | H@10 | epoch |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for name, objective, r in squared:
                if r is None:
                    continue
                if "diverged" in r:
                    lines.append(f"| {name} | {objective} | | diverged: {r['diverged']} |||||")
                    continue
                if objective == "ce":  # reciprocal relations: no likelihood of the original KG
                    lines.append(
                        f"| {name} | 1-vs-all CE, reciprocal | {r['params']:,} | – | – | "
                        f"{r['test']['mrr']:.3f} | {r['test']['hits@10']:.3f} | {epochs} |"
                    )
                    continue
                lines.append(
                    f"| {name} | {objective} | {r['params']:,} | {r['test_ll']:.3f} | "
                    f"{r['train_ll']:.3f} | {r['test']['mrr']:.3f} | {r['test']['hits@10']:.3f} | "
                    f"{r['best_epoch']} |"
                )
            lines.append("")
    return "\n".join(lines)


def setting(res: dict) -> str:
    """A result's loss and normalisation in words (results before ``--loss`` were softmax CE)."""
    loss = {"ce": "softmax CE", "bce": "binary CE"}[res.get("loss", "ce")]
    return loss + (" + BN" if res.get("batch_norm") else "")


def compare(results: list[dict]) -> str:
    """Markdown: per dataset, test MRR of every score-form run (``ce`` = Table 2, with the train
    MRR in parentheses; LS/LR = Table 3; noise = Table 4), one column per result's setting
    (:func:`setting`, epochs), the paper's number first."""
    lines = []
    for ds in dict.fromkeys(r["dataset"] for r in results):
        mine = [r for r in results if r["dataset"] == ds]
        heads = [f"{setting(r)}, {r['epochs']} ep." for r in mine]
        lines += [f"### {ds}", "", "| model | run | paper | " + " | ".join(heads) + " |"]
        lines.append("|---|---|---|" + "---|" * len(mine))
        for name in MODELS:
            for key in ("ce", "ls.1", "ls.2", "lr.1", "lr.2", "noise"):
                cells = []
                for r in mine:
                    run = r["runs"].get(name, {}).get(key)
                    text = "–" if run is None else f"{run['test']['mrr']:.3f}"
                    if run is not None and "train" in run:
                        text += f" ({run['train']['mrr']:.3f})"
                    cells.append(text)
                if all(c == "–" for c in cells):
                    continue
                paper = PAPER[ds][name]
                ref = paper["ce"][0] if key == "ce" else paper.get(key)
                ref_text = "–" if ref is None else f"{ref:.3f}"
                if key == "ce":
                    ref_text += f" ({paper['train']:.3f})"
                label = {"ce": "plain", "noise": "10% noise"}.get(key, key.upper())
                lines.append(f"| {name} | {label} | {ref_text} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["umls", "kinship"])
    parser.add_argument(
        "--experiments", nargs="+", default=["table2", "table3", "table4", "squared"]
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument(
        "--loss", choices=("ce", "bce"), default="ce",
        help="Tables 2-4: softmax CE (ce) or the paper's sigmoid binary CE (bce)",
    )  # fmt: skip
    parser.add_argument(
        "--batch-norm", action="store_true", help="Tables 2-4: batch-normalised embeddings"
    )
    parser.add_argument("--float64", action="store_true", help="train in double precision")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write all results as JSON here")
    parser.add_argument(
        "--render", type=Path, nargs="+", help="print the tables of earlier --out files and exit"
    )
    parser.add_argument(
        "--compare", type=Path, nargs="+", help="print earlier --out files side by side and exit"
    )
    args = parser.parse_args()
    if args.render or args.compare:
        show = render if args.render else compare
        files = args.render or args.compare
        print(show([r for f in files for r in json.loads(f.read_text())["results"]]))
        return
    torch.set_num_threads(args.threads)
    if args.float64:
        torch.set_default_dtype(torch.float64)
    results: list[dict] = []

    def save() -> None:
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            summary = {"paper": PAPER, "loss": args.loss, "batch_norm": args.batch_norm}
            args.out.write_text(json.dumps(summary | {"results": results}, indent=1))

    def report(*line) -> None:  # print, and rewrite --out: an interrupted job keeps its runs
        print_report(*line)
        save()

    for d in args.datasets:
        run(d, args.models, args.experiments, args.epochs, args.seed, report, args.loss,
            args.batch_norm, into=results)  # fmt: skip
    save()


if __name__ == "__main__":
    main()
