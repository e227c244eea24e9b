"""How programs run: compilation cache, backend defaults, devices and
processes, data-parallel layouts, preemption and fault points."""
