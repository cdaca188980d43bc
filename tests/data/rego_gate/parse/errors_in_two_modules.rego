# module: a.rego
package a

p if {
# module: b.rego
package b

q := ]
