"""MemBench's trigger-prompt search: masked-LM proposals, Gibbs chains, augmentation, clustering.

Submodules: ``mlm`` (proposal model, banned tokens), ``mini_mlm`` (the mini suite's shipped trained
word-level BERT, ``mini-mlm``), ``tiny_mlm`` (offline random word-level BERT, for tests),
``gibbs`` (Algorithm 1, resumable chains), ``augment`` (Algorithm 2), ``cluster`` (SSCD DBSCAN
candidates), ``chainlog`` (the JSONL chain log).
"""
