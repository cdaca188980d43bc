# module: lib.rego
package lib

is_admin(u) if u.role == "admin"
# module: main.rego
package main

import data.lib

allow if lib.is_admin(input.user)
