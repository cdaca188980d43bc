# module: a.rego
package a

p if count(5) > 0
# module: b.rego
package b

q := z if true
