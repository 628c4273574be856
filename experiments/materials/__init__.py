"""What an experiment takes from its source: claims, documents, questions, statements.

``load_materials(cfg)`` gives the run's :class:`~experiments.materials.base.Materials`: the
synthetic world (the default) or imported materials (``materials.claims`` and
``materials.docs`` set; ``neglect run --claims DIR --docs DIR``).
"""
from __future__ import annotations

from experiments.materials.base import ClaimInfo, Materials, OpenQuestion


def load_materials(cfg) -> Materials:
    """The study materials a run config names.

    Parameters
    ----------
    cfg : experiments.config.RunConfig

    Returns
    -------
    Materials
        :class:`~experiments.materials.imported.ImportedMaterials` when ``cfg.materials.claims``
        or ``cfg.materials.docs`` is set (both are then required), else
        :class:`~experiments.materials.synthetic.WorldMaterials` of ``cfg.world``.
    """
    from experiments.errors import UserError

    m = cfg.materials
    if m.claims or m.docs:
        if not (m.claims and m.docs):
            missing = "materials.docs (--docs DIR)" if m.claims else "materials.claims (--claims DIR)"
            raise UserError(f"imported materials need both claim packs and documents; {missing} is not set")
        from experiments.materials.imported import ImportedMaterials

        return ImportedMaterials(m.claims, m.docs, m.statements, m.background, m.instruct, m.claim_names)
    if m.claim_names:
        raise UserError("config key 'materials.claim_names' selects claim packs of imported materials; "
                        "materials.claims (--claims DIR) and materials.docs (--docs DIR) are not set")
    from experiments.materials.synthetic import WorldMaterials
    from experiments.materials.world import build_world

    return WorldMaterials(build_world(cfg.world), corpus_mix=vars(cfg.corpus).copy(), frame=cfg.eval.frame,
                          max_subjects=cfg.eval.max_subjects)


__all__ = ["ClaimInfo", "Materials", "OpenQuestion", "load_materials"]
