"""Adaptive attack: MemBench's trigger-prompt search scored through a mitigated pipeline.

Every mitigation paper reports SSCD on fixed trigger prompts; an attacker is not fixed. Here
MemBench's Algorithm 2 (``search.augment``) starts from each memorized image's trigger prompt and
searches for new ones, guided by Wen's single-step memorization signal computed *through the
mitigation* (``signal``), under a fixed budget of scored candidates per image (``budget``); the
best prompts found are then generated through the mitigated pipeline into the run store and scored
by SSCD against the image's references (``run``), and tabulated beside the fixed-prompt Top-1 with
bootstrap intervals over memorized images (``table``).

Submodules: ``signal`` (the attacker's score through the method's hooks, budget counting),
``budget`` (Algorithm 2's chain length and width under a budget), ``run`` (search, generate, score,
content-addressed in the run store), ``table`` (rows, intervals, markdown/JSON).
"""
