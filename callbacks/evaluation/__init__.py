"""Zero-shot label-propagation evaluation (DAVIS-2017, VIP, JHMDB): pure functions and dataclasses.

One module per concept, each importing only those above it in this list:

- ``settings``: the knobs, defined once: ``PropagationConfig`` (k-NN propagation) and ``Protocol`` (everything
  between frames on disk and the score), plus ``override``, the one merge routine.
- ``protocols``: the named bundles ``siammae``, ``dino``, ``crw`` and ``legacy``; ``describe`` for tables.
- ``flags``: eval-all's ``--protocol`` and ``--<knob>`` flags, derived from ``settings``.
- ``cv2_resize``, ``features``: frames to network input (OpenCV's uint8 bilinear resize reproduced), the
  ``DenseFeatures`` contract, L2-normalised features per video, the position-embedding rule.
- ``local_affinity``, ``propagation``: the tiled windowed top-k affinity and the streamed propagation.
- ``labels``: label maps between pixels and the grid (one-hot, the PIL NEAREST resize, decoding).
- ``davis_measures``, ``metrics``: J/F as davis2017-evaluation computes them; torchmetrics J&F, mIoU, PCK.
- ``preview``: pictures of a propagation.
- ``davis``, ``vip``, ``jhmdb``: one module per benchmark, all with the same ``evaluate`` signature.
- ``benchmarks``: the registry (directory name, loader, evaluate, summarise, evaluation size).
- ``sharded``: the one loop (shard -> evaluate -> gather -> summarise) that ``LabelPropagationCallback`` and
  ``eval-all`` both run.
- ``tuning``: the propagation search on a ``tune`` split shared by ``demo`` and ``study``.

Nothing here imports ``lightning``; the callback (``callbacks.propagation_callback``) and the tools
(``lightning_modules.tools``) are the thin layers on top.
"""
