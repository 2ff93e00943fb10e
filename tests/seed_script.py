"""The original seed script, shared by the tests that pin handgrad against it."""

import contextlib
import io

import numpy as np

#: The original seed script, exactly as it was written (run by ``run_seed_script``).
SEED_SCRIPT = """\
import numpy as np
X = np.array([[0,0,1],[1,1,1],[1,0,1],[0,1,1]])
y = np.array([[0],[1],[1],[0]])
np.random.seed(10)
syn0 = np.random.rand(3,4)
syn1 = np.random.rand(4,1)
for j in range(10000):
    l1 = 1/(1+np.exp(-(X @ syn0)))
    l2 = 1/(1+np.exp(-(l1 @ syn1)))
    l2_delta = (y - l2)*(l2*(1-l2))
    l1_delta = l2_delta @ syn1.T * (l1*(1-l1))
    syn1 += l1.T @ l2_delta
    syn0 += X.T @ l1_delta
print(l2)
"""

#: What the original script prints (numpy's default 8 decimals). The test below also
#: regenerates it from SEED_SCRIPT, so a change in numpy's printing shows up as a failure
#: of the pin, not as a silent change of the reference.
SEED_PRINTED = "[[0.00572029]\n [0.99442052]\n [0.99527493]\n [0.00467507]]"


# The seed script is defined by numpy's legacy global RNG: the NPY002 suppressions below
# are the point, not an oversight.


@contextlib.contextmanager
def global_numpy_rng_restored():
    """The script seeds numpy's global RNG; put the caller's state back afterwards."""
    state = np.random.get_state()  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def run_seed_script() -> tuple[str, dict]:
    out = io.StringIO()
    namespace: dict = {}
    with global_numpy_rng_restored(), contextlib.redirect_stdout(out):
        exec(SEED_SCRIPT, namespace)
    return out.getvalue().rstrip("\n"), namespace
