# module: a.rego
package gate.a

n := count(data.gate.b)
# module: b.rego
package gate.b

x := 1

y := 2
