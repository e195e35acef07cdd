"""Loading plugins (mitigations, detectors, extraction methods) from their files, and fingerprinting
their source code for the store keys.

``loader`` imports a plugin file and builds its configured instances (typed, swept parameters);
``mitigations`` and ``detectors`` are that loader bound to one kind; ``source`` hashes the code an
image or a score comes from. Below generation and detection (which key by the fingerprint), above
the plugin faces (``membench_eval.mitigation`` / ``detector`` / ``extraction_method``).
"""
