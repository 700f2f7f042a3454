"""Griffe extension for the API reference: ``SessionManager``'s calls are its methods.

The public calls are functions of the feature modules, bound as methods in the
class body (``save_message = messages.save_message``, see ``manager.py``). Read
from the source, such a line is an attribute; this extension puts the function
itself in the class in its place (at that line, so the calls keep the class's
order), where the reference renders it as the method it is, with its signature
and docstring.
"""

from __future__ import annotations

from typing import Any

import griffe


class BoundCalls(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "starpod_session":
            return
        manager = pkg["manager.SessionManager"]
        for name, member in list(manager.members.items()):
            if member.is_alias or not member.is_attribute or not isinstance(member.value, griffe.ExprAttribute):
                continue
            path = member.value.canonical_path
            if not path.startswith("starpod_session.features."):
                continue
            target = pkg.modules_collection.get_member(path)
            if not target.is_function:
                continue
            function = griffe.Function(
                name,
                lineno=member.lineno,
                endlineno=member.endlineno,
                parameters=target.parameters,
                returns=target.returns,
                docstring=target.docstring,
            )
            manager.set_member(name, function)
