"""infopt: make models faster, smaller and cheaper to run, with every change measured."""

from infopt.errors import InfoptError, MissingDependency, NotApplicable, UserError

__version__ = "0.1.0"
__all__ = ["InfoptError", "MissingDependency", "NotApplicable", "UserError", "__version__"]
