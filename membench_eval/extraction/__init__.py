"""Training-data extraction from unconditional diffusion models (SIDE, Chen et al. 2024, and the
plain-sampling baseline), scored with AMS/UMS (``membench_eval.metrics.memorization``).

``run.Runner`` / ``run.run_extraction`` run one ``ExtractionMethod`` (``membench_eval.extraction_method``;
the bundled ones are ``extractions/plain.py`` and ``extractions/side.py``) on an unconditional suite
(``suite.get_uncond_suite``), caching every stage in the run store (``cache.StageCache``);
``table`` renders the comparison. ``membench extract`` is the command.
"""
