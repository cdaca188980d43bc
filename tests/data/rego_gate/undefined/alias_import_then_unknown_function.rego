# module: lib.rego
package lib.strings

trimmed(s) := trim_space(s)
# module: main.rego
package main

import data.lib.strings as s

allow if s.trim(input.name) == "x"
