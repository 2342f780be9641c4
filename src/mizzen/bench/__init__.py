"""Benchmarks: data-plane overhead and control-plane scale (`mizzen bench`)."""
