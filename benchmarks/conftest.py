"""Benchmarks compare wsstack with its peers in one run; see benchmarks/report.py for the ratios."""
