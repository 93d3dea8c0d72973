"""asv benchmarks of fastem (see docs/benchmarks.md)."""
