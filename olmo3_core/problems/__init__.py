"""Problems with checkable answers, shared by data, post-training and eval: procedural generators,
verifiers (math, code, instruction following), the code sandbox and the named eval sets."""
