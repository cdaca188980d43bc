package gate

import data.user
import input.user

allow if user.admin
