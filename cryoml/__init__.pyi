from . import batch as batch
from . import distribute as distribute
from . import io as io
from . import metrics as metrics
from . import outofcore as outofcore
from . import preprocess as preprocess
from ._errors import CryomlError as CryomlError
from ._errors import CryomlWarning as CryomlWarning
