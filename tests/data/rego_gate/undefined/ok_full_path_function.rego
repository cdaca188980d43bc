# module: lib.rego
package lib

is_admin(u) if u.role == "admin"
# module: main.rego
package main

allow if data.lib.is_admin(input.user)
