"""The learner's process boundary: untrusted code run where it cannot reach handgrad.

Modules: ``learner`` (the learner's side: loading a file, calling its functions, vetting
what they return; run as a script it *is* the learner's process), ``process`` (handgrad's
side: starting that process with its limits and speaking to it), ``wire`` (the data-only
messages between the two: JSON and raw arrays, never pickle) and ``sandbox`` (the
operating system's confinement the learner's process puts itself in: Landlock, seccomp,
no capabilities). Nothing here imports torch, pandas or the rest of handgrad.
"""
