"""ShareBench: sharing policies trained standalone with several seeds, as data (the ground truth every
search is scored against), its seed-to-seed noise ceiling, and rank agreement of proxies with it."""
from nas.bench.config import BenchConfig, load_bench_config
from nas.bench.ranking import rank_agreement

__all__ = ["BenchConfig", "load_bench_config", "rank_agreement"]
