"""Which torch device a network runs on: ``auto`` (CUDA when present) or a name, checked for a command line."""

from __future__ import annotations

import torch


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` → CUDA if available else CPU; anything else → ``torch.device(device)``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else torch.device(device)


def checked_device(name: str, option: str = "--device") -> torch.device:
    """:func:`resolve_device` for a command-line option: a malformed name, or a GPU that is not there, raises a
    ``ValueError`` naming ``option`` now, not a torch error later."""
    try:
        device = resolve_device(name)
        if device.type != "cpu":
            torch.zeros(1, device=device)  # no driver, no such GPU
        return device
    except (RuntimeError, AssertionError) as err:
        raise ValueError(f"{option} {name}: {(str(err).strip().splitlines() or [''])[0]} (use auto, cpu, cuda or "
                         f"cuda:N)") from None
