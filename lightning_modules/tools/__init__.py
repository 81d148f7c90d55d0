"""corrmae's command-line tools (not LightningModules), dispatched by ``lightning_modules.cli.TOOLS``.

- ``eval_all``: ``corrmae eval-all``, zero-shot DAVIS / VIP / JHMDB of one feature model; ``eval_launcher``
  runs it on N devices; ``eval_store`` makes it resumable; ``eval_progress`` draws its progress bars.
- ``demo``: ``corrmae demo`` (``make demo``), pre-train on CPU and compare with two baselines.
- ``study``: ``corrmae study`` (``make study-cpu``), several variants against their random initialisation;
  ``study_variants`` reads and trains the variants.
- ``export``: ``corrmae export``, a checkpoint's encoder as a timm / Hugging Face folder.
- ``results_table``: the markdown table all three write; ``writable``: the output-directory probe.
"""
