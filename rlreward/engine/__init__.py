"""The scoring engine: runs on a replica (or in-process for ``rlreward score``/``eval``/``bench``).

``config`` (what a scoring process needs) → ``media`` (image/video references, limits) →
``preprocess`` (the reference recipe's two resizes, chat template, tokens) → ``batching`` (token
budget, prefix groups, collation) → ``scorer`` (one forward pass, value head on the last token)
with ``head`` (loading the value head).
"""
