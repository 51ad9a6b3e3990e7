"""Package attributes imported on first access (PEP 562), so importing a package stays cheap."""
import importlib


def lazy_attributes(package, exports):
    """A module ``__getattr__`` for ``package`` that imports ``exports[name]`` on access.

    Args:
        package (str): the package's ``__name__``.
        exports (dict[str, str]): attribute name -> submodule (relative to ``package``)
            that defines it.

    Returns:
        callable: assign it to the package's ``__getattr__``.
    """
    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f'module {package!r} has no attribute {name!r}')
        return getattr(importlib.import_module(f'{package}.{exports[name]}'), name)

    return __getattr__
