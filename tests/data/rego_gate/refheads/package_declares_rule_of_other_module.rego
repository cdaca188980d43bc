# module: one.rego
package gate.a

b := 1
# module: two.rego
package gate

a.b.c := 2
