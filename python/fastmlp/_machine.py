"""What machine fastmlp runs on, said once for the command line and both benchmarks.

:func:`machine_info` gathers the facts that explain a timing or a result: the CPU model
and the cores this process may use, the instruction set fastmlp's kernels detected and
use, the CPU's bf16 and AMX features, and NumPy's BLAS (which library, which version, how
many threads). Library paths are given as ``<folder>/<file>``, enough to tell which
package ships a library without recording the machine's absolute paths.
"""

from __future__ import annotations

import os
import platform
import warnings

__all__ = ["blas_libraries", "cpu_features", "cpu_model", "library_name", "machine_info",
           "n_cores"]

_CPUINFO = "/proc/cpuinfo"
# The /proc/cpuinfo flags that matter to fastmlp's kernels: the vector ISAs it has
# kernels for, and the bf16 / AMX features that bf16 kernels would use.
_FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16",
             "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


def _cpuinfo_field(name):
    """The value of the first ``name : value`` line of /proc/cpuinfo, or None."""
    try:
        with open(_CPUINFO, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == name:
                    return value.strip()
    except OSError:  # not Linux, or /proc is not mounted
        pass
    return None


def cpu_model():
    """The CPU's model name, e.g. ``"Intel(R) Xeon(R) ..."``, with its CPUID family and
    model where /proc/cpuinfo gives them: a virtual machine may name only the brand
    ("AMD EPYC"), and the family tells the generations apart (AMD: 25 Zen 3/4, 26 Zen 5)."""
    name = _cpuinfo_field("model name") or platform.processor() or platform.machine()
    family, model = _cpuinfo_field("cpu family"), _cpuinfo_field("model")
    if family and model:
        name += f" (family {family}, model {model})"
    return name


def n_cores():
    """The cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_features():
    """Which of the CPU features in ``_FEATURES`` /proc/cpuinfo lists (empty elsewhere)."""
    flags = set((_cpuinfo_field("flags") or "").split())
    return [f for f in _FEATURES if f in flags]


def library_name(path):
    """A shared library as ``"<folder>/<file>"`` (e.g. ``numpy.libs/libscipy_openblas...so``),
    or None for no path."""
    if not path:
        return None
    return os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))


def blas_libraries(numpy_only=False):
    """The BLAS libraries loaded in this process, as threadpoolctl sees them now (so inside
    ``threadpool_limits`` the thread counts are the limited ones). ``numpy_only``: only
    the one NumPy ships (SciPy's, when also loaded, is another copy)."""
    import threadpoolctl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # threadpoolctl may warn about mixed OpenMP runtimes
        pools = threadpoolctl.threadpool_info()
    keys = ("internal_api", "version", "num_threads", "architecture", "threading_layer")
    blas = [{**{k: p.get(k) for k in keys}, "library": library_name(p.get("filepath"))}
            for p in pools if p.get("user_api") == "blas"]
    if numpy_only:
        blas = [b for b in blas if "numpy" in (b["library"] or "")]
    return blas


def machine_info():
    """A JSON-ready dict of the machine, the fastmlp build and NumPy's BLAS."""
    import numpy as np
    import sklearn
    import threadpoolctl

    from . import __version__
    from ._core import active_bf16_kernel, active_isa, detected_isa

    blas = blas_libraries()
    numpy_blas = [b for b in blas if "numpy" in (b["library"] or "")] or blas
    return {
        "cpu": cpu_model(),
        "cores": n_cores(),
        "cpus": os.cpu_count(),
        "cpu_features": cpu_features(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "threadpoolctl": threadpoolctl.__version__,
        "fastmlp": __version__,
        "fastmlp_isa": active_isa(),
        "fastmlp_detected_isa": detected_isa(),
        "fastmlp_bf16_kernel": active_bf16_kernel(),
        "blas": blas,
        "numpy_blas_threads": [b["num_threads"] for b in numpy_blas],
    }
