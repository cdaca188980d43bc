package gate

import data.lib.helpers as check

check if input.ok
