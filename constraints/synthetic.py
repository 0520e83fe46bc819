"""A seeded synthetic typed biomedical knowledge graph, with its domain schema.

Types: ``drug``, ``protein``, ``enzyme`` (a subset of the proteins, so those entities have two
types), ``disease`` and ``side_effect``. Relations and their signatures:

================  =========================  ===========================
relation          subject types              object types
================  =========================  ===========================
interacts         drug                       protein
inhibits          drug                       enzyme
treats            drug                       disease
causes            drug                       side_effect
associated_with   protein                    disease
binds             protein                    protein
linked_to         drug, protein              disease, side_effect
================  =========================  ===========================

Every entity belongs to one of ``num_areas`` latent therapeutic areas; a triple's object is drawn
``affinity`` times more often from the subject's area, so there is structure for a model to learn.
A few entities carry real names (``loxoprofen``, ``COX2``, ...), placed in plausible areas. With
``noise > 0`` that fraction of the triples is replaced by schema-violating ones (to exercise
validation). O(num_triples · entities per type).
"""

from __future__ import annotations

import torch
from circuitkg.constraints.schema import DomainSchema, Signature

from circuitkg.data import KnowledgeGraph

__all__ = ["SIGNATURES", "biomedical_kg"]

SIGNATURES: dict[str, Signature] = {
    "interacts": Signature(frozenset({"drug"}), frozenset({"protein"})),
    "inhibits": Signature(frozenset({"drug"}), frozenset({"enzyme"})),
    "treats": Signature(frozenset({"drug"}), frozenset({"disease"})),
    "causes": Signature(frozenset({"drug"}), frozenset({"side_effect"})),
    "associated_with": Signature(frozenset({"protein"}), frozenset({"disease"})),
    "binds": Signature(frozenset({"protein"}), frozenset({"protein"})),
    "linked_to": Signature(frozenset({"drug", "protein"}), frozenset({"disease", "side_effect"})),
}

# named entities: (name, area); the rest are numbered and get random areas
_NAMED = {
    "drug": [
        ("loxoprofen", 0),
        ("ibuprofen", 0),
        ("celecoxib", 0),
        ("aspirin", 0),
        ("metformin", 1),
        ("atorvastatin", 2),
        ("warfarin", 3),
    ],
    "protein": [("COX1", 0), ("COX2", 0), ("AMPK", 1), ("HMGCR", 2), ("VKORC1", 3)],
    "disease": [
        ("arthritis", 0),
        ("fever", 0),
        ("diabetes", 1),
        ("hypercholesterolemia", 2),
        ("thrombosis", 3),
    ],
    "side_effect": [("ulcer", 0), ("nausea", 1), ("myalgia", 2), ("bleeding", 3)],
}
_ENZYMES = {"COX1", "COX2", "HMGCR", "VKORC1"}


def biomedical_kg(
    num_drugs: int = 30,
    num_proteins: int = 40,
    num_diseases: int = 20,
    num_side_effects: int = 15,
    num_triples: int = 1500,
    num_areas: int = 4,
    affinity: float = 8.0,
    enzyme_fraction: float = 0.3,
    noise: float = 0.0,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> tuple[KnowledgeGraph, DomainSchema]:
    """``(kg, schema)``: a random typed KG (module docstring) and the schema it follows.

    Triples are distinct; ``split`` gives the train/valid/test fractions. ``noise`` is the
    fraction of triples that break the schema (0 by default: every triple is consistent).
    """
    if min(num_drugs, num_proteins, num_diseases, num_side_effects) < 1:
        raise ValueError("every entity type needs at least one entity")
    if not 0.0 <= noise < 1.0:
        raise ValueError(f"noise must lie in [0, 1), got {noise}")
    if abs(sum(split) - 1.0) > 1e-9 or min(split) < 0:
        raise ValueError(f"split must be three non-negative fractions summing to 1, got {split}")
    gen = torch.Generator().manual_seed(seed)
    counts = {
        "drug": num_drugs,
        "protein": num_proteins,
        "disease": num_diseases,
        "side_effect": num_side_effects,
    }
    entity_types: dict[str, set[str]] = {}
    area: dict[str, int] = {}
    for kind, count in counts.items():
        named = _NAMED[kind][:count]
        names = [n for n, _ in named] + [f"{kind}_{i:03d}" for i in range(len(named), count)]
        areas = [a % num_areas for _, a in named]
        areas += torch.randint(num_areas, (count - len(named),), generator=gen).tolist()
        for i, (name, a) in enumerate(zip(names, areas, strict=True)):
            entity_types[name], area[name] = {kind}, a
            numbered = i - len(named)  # a numbered protein is an enzyme among the first fraction
            if kind == "protein" and (
                name in _ENZYMES or 0 <= numbered < enzyme_fraction * (count - len(named))
            ):
                entity_types[name].add("enzyme")

    entities = sorted(entity_types)
    relations = sorted(SIGNATURES)
    ent_id = {e: i for i, e in enumerate(entities)}
    area_of = torch.tensor([area[e] for e in entities])
    has_type = {
        t: torch.tensor([t in entity_types[e] for e in entities])
        for t in ("drug", "protein", "enzyme", "disease", "side_effect")
    }

    def members(types: frozenset[str]) -> torch.Tensor:
        return torch.stack([has_type[t] for t in types]).any(dim=0).nonzero()[:, 0]

    triples: set[tuple[int, int, int]] = set()
    num_noisy = int(round(noise * num_triples))
    sides = [(members(SIGNATURES[r].subject), members(SIGNATURES[r].object)) for r in relations]
    wanted = num_triples - num_noisy
    for _ in range(100):  # rounds of vectorised draws; duplicates and self-loops are redrawn
        if len(triples) == wanted:
            break
        drawn = torch.randint(len(relations), (wanted - len(triples),), generator=gen)
        for r, (subjects, objects) in enumerate(sides):
            s = subjects[torch.randint(len(subjects), (int((drawn == r).sum()),), generator=gen)]
            near = area_of[objects].unsqueeze(0) == area_of[s].unsqueeze(1)
            o = objects[torch.multinomial(torch.where(near, affinity, 1.0), 1, generator=gen)[:, 0]]
            triples.update((a, r, b) for a, b in zip(s.tolist(), o.tolist(), strict=True) if a != b)
    if len(triples) < wanted:
        raise ValueError(f"cannot draw {num_triples} distinct triples; use fewer or more entities")
    schema = DomainSchema({e: entity_types[e] for e in entities}, SIGNATURES)
    while num_noisy:
        s, o = torch.randint(len(entities), (2,), generator=gen).tolist()
        r = int(torch.randint(len(relations), (1,), generator=gen))
        if (s, r, o) not in triples and not schema.consistent(
            entities[s], relations[r], entities[o]
        ):
            triples.add((s, r, o))
            num_noisy -= 1

    data = torch.tensor(sorted(triples), dtype=torch.long)
    data = data[torch.randperm(len(data), generator=gen)]
    n_train = int(round(split[0] * len(data)))
    n_valid = int(round(split[1] * len(data)))
    splits = {
        "train": data[:n_train],
        "valid": data[n_train : n_train + n_valid],
        "test": data[n_train + n_valid :],
    }
    kg = KnowledgeGraph(
        name=f"synthetic-biomedical-{seed}",
        entity_to_id=ent_id,
        id_to_entity=entities,
        relation_to_id={r: i for i, r in enumerate(relations)},
        id_to_relation=relations,
        splits=splits,
    )
    return kg, schema
