# module: a.rego
package a

x := y
# module: b.rego
package b

p if {
