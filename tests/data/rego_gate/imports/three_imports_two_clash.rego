package gate

import data.a.users
import data.b.groups
import input.users

allow if users.x == groups.y
