"""Offline tools: build and train tiny checkpoints, benchmark scoring, evaluate on reward benchmarks.

Nothing here runs on a serving replica; the commands in :mod:`rlreward.commands` call these.
"""
