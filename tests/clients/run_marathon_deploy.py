#!/usr/bin/env python3
# (Not named marathon_deploy.py: that would shadow the package it runs.)
"""Run the `marathon-deploy` CLI (PyPI 3.0.2) with the given arguments.

Usage: run_marathon_deploy.py -m http://127.0.0.1:PORT [marathon-deploy args...]

The same as its `marathon-deploy` entry point, with the one shim the
`marathon` client it is built on needs on Python >= 3.10.
"""
import collections
import collections.abc
import sys

# marathon 0.13.0 still uses collections.Iterable, removed in Python 3.10.
collections.Iterable = collections.abc.Iterable

from marathon_deploy.deploytool import main  # noqa: E402

sys.argv = ["marathon-deploy"] + sys.argv[1:]
main()
