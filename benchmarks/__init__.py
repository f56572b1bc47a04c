"""The runner, the command line and the benchmark specs.

Dependencies' warnings about their own use of deprecated torch APIs (torch_geometric
scripts functions with `torch.jit.script`: a FutureWarning on some torch builds, a
DeprecationWarning on others) say nothing a user of this command can act on, and
would come before its one-line error: they are silenced here, before any
dependency is imported, and nothing else is.
"""

import warnings

warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=DeprecationWarning)
