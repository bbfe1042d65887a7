"""burnline processors; each module registers its type when imported (see load_builtin_components)."""
