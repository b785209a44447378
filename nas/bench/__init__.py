"""ShareBench, the ground truth every search is scored against: sharing policies trained standalone
with several seeds (`build.py`, its config `config.py`, the policy set `policies.py`), as data in a
table (`table.py`: means, seed spread `spread.py`, chance levels `chance.py`, the noise ceiling, the
paper check; its record `record.py`) and its markdown (`render.py`); the fronts searches choose, judged by the standalone
scores (`front.py`). How proxies and other benches rank against it is
`nas/ranking/`."""
from nas.bench.config import BenchConfig, load_bench_config

__all__ = ["BenchConfig", "load_bench_config"]
