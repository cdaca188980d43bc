package gate

import data.lib
import data.lib

input := 1
