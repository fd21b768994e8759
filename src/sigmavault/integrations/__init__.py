"""Adapters that let frameworks use a vault as their store (a face: each maps calls, nothing more).

``sigmavault.integrations.langchain`` needs the ``[langchain]`` extra; it is imported only when used.
"""
