"""MemBench's trigger-prompt search: masked-LM proposals, Gibbs chains, augmentation, clustering.

Submodules: ``mlm`` (proposal model, banned tokens), ``tiny_mlm`` (offline word-level BERT),
``gibbs`` (Algorithm 1, resumable chains), ``augment`` (Algorithm 2), ``cluster`` (SSCD DBSCAN
candidates), ``chainlog`` (the JSONL chain log).
"""
