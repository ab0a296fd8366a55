"""Record: ketch's plain data classes (image rows, engine options), cheap to define.

`@dataclass` writes the source of an __init__, __repr__ and __eq__ for each
class and exec()s it when the module is imported, and importing dataclasses
itself pulls in inspect, ast, dis and tokenize: 11 ms here before `ketch images`
or `ketch run` does anything. A Record reads its field names and defaults
from the class annotations once, in __init_subclass__, and one generic
__init__ serves every class. It keeps what ketch used of dataclasses:
keyword or positional construction in field order, defaults, fresh mutable
defaults (`Factory(list)`), equality by fields, a readable repr, and a deep
`as_dict()` for JSON.

It lives with the pure-data layer (oci/) so that every layer above, from
content/ and image/ up to engine/, can share the one implementation.
"""

from __future__ import annotations


class Factory:
    """A default made afresh for each instance (dataclasses' default_factory)."""

    __slots__ = ("make",)

    def __init__(self, make):
        self.make = make


class Record:
    """Subclass, annotate the fields (defaults after the required ones), done."""

    _fields: tuple[str, ...] = ()
    _defaults: dict = {}

    def __init_subclass__(cls, **kw) -> None:
        super().__init_subclass__(**kw)
        names = list(cls._fields)
        defaults = dict(cls._defaults)
        for name in cls.__dict__.get("__annotations__", {}):
            if name.startswith("_"):
                continue
            if name not in names:
                names.append(name)
            if name in cls.__dict__:
                defaults[name] = cls.__dict__[name]
                if isinstance(defaults[name], Factory):
                    delattr(cls, name)   # the class must not share one list among instances
        cls._fields = tuple(names)
        cls._defaults = defaults

    def __init__(self, *args, **kw) -> None:
        cls = type(self).__name__
        if len(args) > len(self._fields):
            raise TypeError(f"{cls}() takes at most {len(self._fields)} positional arguments")
        for name, value in zip(self._fields, args, strict=False):
            if name in kw:
                raise TypeError(f"{cls}() got multiple values for argument {name!r}")
            kw[name] = value
        for name in self._fields:
            if name in kw:
                value = kw.pop(name)
            elif name in self._defaults:
                value = self._defaults[name]
                if isinstance(value, Factory):
                    value = value.make()
            else:
                raise TypeError(f"{cls}() missing required argument: {name!r}")
            setattr(self, name, value)
        if kw:
            raise TypeError(f"{cls}() got an unexpected keyword argument {next(iter(kw))!r}")

    def __eq__(self, other) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._fields)

    __hash__ = None   # mutable and compared by value, like an eq=True dataclass

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__name__}({inner})"

    def as_dict(self) -> dict:
        """Fields as a dict, nested records, lists and dicts copied (dataclasses.asdict)."""
        return {f: _plain(getattr(self, f)) for f in self._fields}


def _plain(value):
    if isinstance(value, Record):
        return value.as_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
