"""What SinKD Lab's pages compute and draw (needs the ``lab`` extra; never imports Streamlit).

The modules, from the bottom up (each imports only those above it, and the core of ``sinkd``):

- :mod:`~sinkd.lab.style`: one colour and label per divergence, shared by every figure;
- :mod:`~sinkd.lab.spec`: :class:`~sinkd.lab.spec.PageSpec`, a page's defaults, limits and
  presets, and the ranges several pages share;
- :mod:`~sinkd.lab.batches`: toy batches of predictions and their SinKD transport problem;
- :mod:`~sinkd.lab.toy`, :mod:`~sinkd.lab.toy_metrics`, :mod:`~sinkd.lab.toy_figures`: the
  divergence lab's 1-D fits, what they did, and their figures;
- :mod:`~sinkd.lab.robustness`: the divergence lab presets' claims counted over seeds, step
  budgets and learning rates (one stacked fit), and W1 against steps;
- :mod:`~sinkd.lab.batchwise_toy`, :mod:`~sinkd.lab.batchwise_fit`,
  :mod:`~sinkd.lab.batchwise`, :mod:`~sinkd.lab.batchwise_figures`: the batch-wise toy (what
  SinKD's term matches: a batch's cloud of predictions on the simplex), its fits and
  measurements, the page's views and robustness counts, its figures;
- :mod:`~sinkd.lab.plans`, :mod:`~sinkd.lab.plan_numerics`, :mod:`~sinkd.lab.plan_figures`:
  the transport plan iteration by iteration, where the kernel solver fails per dtype, figures;
- :mod:`~sinkd.lab.verify_checks`, :mod:`~sinkd.lab.verify_limits`, :mod:`~sinkd.lab.verify`,
  :mod:`~sinkd.lab.verify_figures`: the solver checked against POT, and its figures;
- :mod:`~sinkd.lab.distill_figures`: the distillation page's figures (records are passed in:
  ``sinkd.lab`` and ``sinkd.distill`` do not import each other);
- ``<page>_spec`` (:mod:`~sinkd.lab.transport_spec`, :mod:`~sinkd.lab.divergence_lab_spec`,
  :mod:`~sinkd.lab.batchwise_spec`,
  :mod:`~sinkd.lab.verify_spec`, :mod:`~sinkd.lab.distill_spec`): each page's spec, the one
  place its defaults, limits and presets are written.
"""
