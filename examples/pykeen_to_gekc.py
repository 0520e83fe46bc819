"""From a PyKEEN model to a normalised GeKC: exact likelihoods, calibration, samples, a schema.

    pip install 'circuitkg[pykeen]' && python examples/pykeen_to_gekc.py [--epochs 20]

1. Train ComplEx with PyKEEN's own ``pipeline`` on Nations (PyKEEN ships it).
2. ``compile_pykeen`` turns it into circuitkg's ComplEx with the same scores (checked here), and in
   squared form into the GeKC ``p(s, r, o) = φ² / Z``; a few epochs of PLL fine-tuning from
   PyKEEN's parameters (paper 004's ComplEx²★ start) make it a good one.
3. Then what PyKEEN has no way to give: the exact test log-likelihood, calibrated probabilities
   (ECE and a reliability table), exact samples by name, and top-k answers that never break a
   domain schema.
"""

from __future__ import annotations

import argparse

import torch
from circuitkg.constraints import DomainSchema, constrain
from pykeen.datasets import Nations
from pykeen.pipeline import pipeline as pykeen_pipeline

import circuitkg as ckg
from circuitkg.interop.pykeen import compile_pykeen, from_dataset

#: an illustrative schema: "conferences" is between western and non-western states only
WESTERN = {"netherlands", "uk", "usa", "israel"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="PyKEEN training epochs")
    parser.add_argument("--finetune", type=int, default=10, help="circuitkg PLL epochs")
    parser.add_argument("--dim", type=int, default=16, help="ComplEx embedding dimension")
    args = parser.parse_args()

    # 1. PyKEEN, as a PyKEEN user would
    dataset = Nations()
    trained = pykeen_pipeline(
        dataset=dataset,
        model="ComplEx",
        model_kwargs={"embedding_dim": args.dim},
        training_kwargs={"num_epochs": args.epochs, "use_tqdm": False},
        random_seed=0,
        device="cpu",
    )
    pykeen_mrr = trained.metric_results.get_metric("both.realistic.inverse_harmonic_mean_rank")
    print(f"PyKEEN ComplEx: test MRR {pykeen_mrr:.3f}")

    # 2. the same model as a circuit: equal scores, then the squared GeKC, fine-tuned
    kg = from_dataset(dataset)  # ids preserved
    score_model = compile_pykeen(trained.model)
    hrt = kg.test[:5]
    with torch.no_grad():
        ours = score_model.compile().score(hrt)
        theirs = trained.model.score_hrt(hrt).flatten()
    print(f"max |φ - PyKEEN score| on 5 test triples: {float((ours - theirs).abs().max()):.1e}")
    quiet = {"progress": False, "log": lambda line: None}
    start = ckg.pipeline(
        dataset=kg, model=compile_pykeen(trained.model, "squared"), epochs=0, **quiet
    )
    print(
        f"PyKEEN's parameters as ComplEx² (p = φ²/Z), not trained further: test MRR "
        f"{start.metrics['mrr']:.3f}, mean log-likelihood {start.metrics['log_likelihood']:.3f}"
    )
    gekc = ckg.pipeline(
        dataset=kg, model=compile_pykeen(trained.model, "squared"), epochs=args.finetune, **quiet
    )

    # 3. what the circuit adds
    m = gekc.metrics
    print(
        f"GeKC (ComplEx², {args.finetune} epochs from PyKEEN's parameters): test MRR "
        f"{m['mrr']:.3f}, exact mean log-likelihood {m['log_likelihood']:.3f} nats "
        f"(uniform: {-torch.log(torch.tensor(kg.num_entities**2 * kg.num_relations)):.3f}), "
        f"ECE {m['ece']:.3f}"
    )
    print("top 3 (usa, conferences, ?):", gekc.topk("o", s="usa", r="conferences", k=3))
    samples = gekc.compiled.sample(5, generator=torch.Generator().manual_seed(0))
    for s, r, o in samples.tolist():
        print("  sampled:", kg.id_to_entity[s], kg.id_to_relation[r], kg.id_to_entity[o])
    schema = DomainSchema(
        {e: "western" if e in WESTERN else "other" for e in kg.id_to_entity},
        {"conferences": (["western"], ["other"])},
    )
    constrained = constrain(gekc.compiled, schema.bind(kg))
    print("top 3 under the schema:", constrained.topk("o", s="usa", r="conferences", k=3))


if __name__ == "__main__":
    main()
