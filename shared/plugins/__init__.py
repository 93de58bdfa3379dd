"""The plugin framework: stages, the context a plugin sees, priorities, the registry that runs
plugins in order, and the actions a plugin may ask for. Concrete plugins live in the top-level
``plugins`` package; the composition root hands them to the runtime.

May import: the top of ``shared``.
"""
