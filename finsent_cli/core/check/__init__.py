"""Capability tests of a sentiment model (``finsent check``), after CheckList (Ribeiro et al., 2020).

A suite is data: YAML files of templates with placeholders and fill lists (``resources/checks/``, plus the
user's ``--suite`` files), each file one capability (negation, a bad quantity that shrinks, ...).
``schema`` validates a file (one line per problem), ``suite`` loads and merges the files, ``expand`` turns
templates into a deterministic sample of test cases, and ``run`` classifies the cases with the model and
scores every capability and template.
"""
