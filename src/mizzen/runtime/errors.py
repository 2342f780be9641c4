"""Errors raised by the local runtime.

Every message is one line that tells the user what to do next::

    MeshRuntimeError
     ├── MeshNameError      bad --name
     ├── MeshBusyError      a second `up` with the same name
     ├── MeshStaleError     leftovers of a crashed mesh with the same name
     ├── NoFreeSlotError    all address slots are taken
     ├── StateError         state.json unreadable
     ├── CommandError       `ip`, `iptables`, ... failed
     └── PreflightError     the machine cannot run a mesh (root, tools)
"""

from __future__ import annotations


class MeshRuntimeError(Exception):
    """Base class of every runtime error."""


class MeshNameError(MeshRuntimeError, ValueError):
    pass


class MeshBusyError(MeshRuntimeError):
    pass


class MeshStaleError(MeshRuntimeError):
    pass


class NoFreeSlotError(MeshRuntimeError):
    pass


class StateError(MeshRuntimeError):
    pass


class CommandError(MeshRuntimeError):
    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        detail = " ".join(stderr.split()) or f"exit status {returncode}"
        super().__init__(f"`{' '.join(argv)}` failed: {detail}")


class PreflightError(MeshRuntimeError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))
