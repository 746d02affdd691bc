"""Loading official network pickles (NVlabs StyleGAN3 ``.pkl``, NVlabs EDM ``.pkl``),
only with an explicit opt-in.

Unpickling runs whatever code the file names: a pickle from an untrusted source
can do anything the user can. synthbench therefore never unpickles by default:
:func:`load_network_pickle` refuses unless the caller passes ``trust=True``
(``--option trust_pickle=true`` on the command line), and says so in a message
that names the option. Everything else synthbench keeps on disk is loaded without
pickle (``torch.load(weights_only=True)``, ``.npz``, JSON).

NVlabs pickles hold a dict such as ``{'G': ..., 'D': ..., 'G_ema': ...}``
(StyleGAN2/3) or ``{'ema': ...}`` (EDM) of modules whose classes are rebuilt from
source by NVlabs' ``torch_utils.persistence``, which needs that repository's
``dnnlib`` and ``torch_utils`` packages importable: ``code_dir`` (a checkout of
NVlabs/stylegan3 or NVlabs/edm) is put on ``sys.path`` first, and left there, since
the networks import from it again when they run.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

from synthbench.errors import UserError


def _opt(owner: str, key: str, value: str) -> str:
    return f"--option {owner}.{key}={value}" if owner else f"--option {key}={value}"


def load_network_pickle(path: str | Path, trust: bool, code_dir: str | Path | None = None,
                        key: str | None = None, owner: str = "") -> Any:
    """The object pickled in ``path`` (or its entry ``key``, e.g. ``'G_ema'`` or
    ``'ema'``), unpickled only when ``trust`` is True.

    ``owner`` (a generator's name) only shapes the messages, which name its
    options ``network_pkl``, ``trust_pickle`` and ``code_dir``. Every failure is a
    :class:`UserError` that says how to fix it: a missing file, no opt-in, a
    missing module (set ``code_dir``), an unreadable file, a missing key."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"The network pickle {path} does not exist (or is not a file). Give the path of an "
                        f"official .pkl with {_opt(owner, 'network_pkl', 'PATH')}.")
    if not trust:
        raise UserError(
            f"Refusing to load the network pickle {path}: unpickling runs arbitrary code stored in the "
            f"file, so a pickle from an untrusted source can do anything you can. If you trust where it "
            f"came from (e.g. NVlabs' official release), opt in with "
            f"{_opt(owner, 'network_pkl', str(path))} {_opt(owner, 'trust_pickle', 'true')}."
        )
    if code_dir is not None:
        code = Path(code_dir).expanduser().resolve()
        if not code.is_dir():
            raise UserError(f"code_dir {code} is not a folder. Point {_opt(owner, 'code_dir', 'PATH')} at a "
                            f"checkout of the repository the pickle came from (e.g. NVlabs/stylegan3).")
        if str(code) not in sys.path:
            sys.path.insert(0, str(code))
    try:
        with path.open("rb") as fh:
            obj = pickle.load(fh)
    except ModuleNotFoundError as exc:
        raise UserError(
            f"Unpickling {path} needs the Python module {exc.name!r}, which is not importable. NVlabs "
            f"pickles need their repository's dnnlib and torch_utils packages: clone NVlabs/stylegan3 (or "
            f"NVlabs/edm for EDM pickles) and pass {_opt(owner, 'code_dir', 'PATH_TO_CHECKOUT')}."
        ) from None
    except Exception as exc:  # truncated file, not a pickle, incompatible versions
        raise UserError(f"The network pickle {path} could not be read ({type(exc).__name__}: {exc}). Check "
                        f"that it is a complete, official .pkl file.") from None
    if key is None:
        return obj
    if not isinstance(obj, dict) or key not in obj:
        have = ", ".join(map(repr, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise UserError(f"The network pickle {path} holds no {key!r} (it holds {have}); this adapter "
                        f"expects an official NVlabs network pickle.")
    return obj[key]


def pickle_spec_extras(options: dict[str, Any]) -> dict[str, Any]:
    """``spec_extras`` of an adapter with a ``network_pkl`` option: the file's
    content digest belongs in the cell's key, so a different pickle at the same
    path is a different cell (a missing file is reported by ``fit``)."""
    from synthbench.benchmark.cache import file_digest

    path = options.get("network_pkl")
    if not path:
        return {}
    try:
        return {"network_pkl_sha256": file_digest(path)}
    except OSError:
        return {"network_pkl_sha256": f"missing: {path}"}
