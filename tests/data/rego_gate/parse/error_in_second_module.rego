# module: lib.rego
package lib

ok if true
# module: main.rego
package main

import data.lib

allow if {
	lib.ok
