"""What every benchmark section shares: the machine, timing with warm-up, peak memory, Markdown tables.

Times come from `torch.utils.benchmark` (it synchronises a GPU before reading the clock) after warm-up
calls; a mean ± std is over its measured blocks. Peak memory is what one call allocates beyond what was
already allocated: on a GPU torch.cuda.max_memory_allocated, on a CPU the peak of torch's allocations as
torch.profiler records them (a process's RSS would also count the Python heap and freed-but-kept pages).
"""

import argparse
import contextlib
import os
import platform
import statistics
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils import benchmark


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_header(device: str = "cpu") -> str:
    """One line naming the CPU, the GPU (if used), torch and the threads torch uses."""
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "none used"
    return (f"Machine: {cpu_name()} ({os.cpu_count()} cores visible, torch uses {torch.get_num_threads()} "
            f"threads); GPU: {gpu}; Python {platform.python_version()}, torch {torch.__version__}")


def positive(text: str) -> int:
    """An argparse type: a whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def writable_folder(prog: str, path) -> Path:
    """`path` made if missing, or the program ends with one line saying why it cannot write there."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SystemExit(f"{prog}: error: cannot write into {path}: {error.strerror}") from None
    return path


def run_directory(output: str, cwd: Path = Path(".")) -> Path:
    """The run directory a `python main.py` child named on its "run directory:" line. A taken --run_name gets
    -2, -3, ... (training/run.py: claim_run_dir), so the name asked for may be an older run's."""
    for line in reversed(output.splitlines()):
        if line.startswith("run directory: "):
            return cwd / line.removeprefix("run directory: ")  # an absolute path stays as it is
    raise ValueError("main.py's output names no run directory")


def synchronize(device: str):
    if device == "cuda":
        torch.cuda.synchronize()


def time_call(fn, min_run_time: float, warmup: int = 2) -> tuple[float, float]:
    """(mean, std) seconds of one fn() after `warmup` untimed calls; std is 0 if only one block ran."""
    for _ in range(warmup):
        fn()
    measurement = benchmark.Timer("fn()", globals={"fn": fn}).blocked_autorange(min_run_time=min_run_time)
    times = measurement.times
    return statistics.mean(times), statistics.stdev(times) if len(times) > 1 else 0.0


@contextlib.contextmanager
def kineto_lines_silenced():
    """Sends file descriptor 2 to /dev/null meanwhile: the profiler's C++ library writes a line to it at
    every start and stop, which would bury the benchmark's own progress lines. Exceptions still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def peak_memory_bytes(fn, device: str) -> int:
    """Bytes allocated at the peak of one fn(), beyond what was allocated before it."""
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    with kineto_lines_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        fn()
    # Each event's own allocations minus its own frees; an operation frees its temporaries before it ends,
    # so allocations count from an event's start and frees from its end (the later, larger estimate).
    changes = []
    for event in profiler.events():
        change = event.self_cpu_memory_usage
        if change:
            changes.append((event.time_range.start if change > 0 else event.time_range.end, change))
    live = peak = 0
    for _, change in sorted(changes):
        live += change
        peak = max(peak, live)
    return peak


def mean_std(mean: float, std: float, scale: float = 1e3, digits: int = 2) -> str:
    """'12.34 ± 0.56' (milliseconds by default)."""
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def megabytes(count: int) -> str:
    return f"{count / 2 ** 20:.1f}"


def markdown_table(columns: list[str], rows: list[list], align: str = None) -> str:
    """A Markdown table; `align` is one character per column, 'l' or 'r' (default: first left, rest right)."""
    align = align or "l" + "r" * (len(columns) - 1)
    lines = ["| " + " | ".join(columns) + " |",
             "| " + " | ".join("---" if a == "l" else "---:" for a in align) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
