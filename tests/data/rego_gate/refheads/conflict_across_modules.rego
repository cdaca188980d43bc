# module: one.rego
package gate

settings.mode := "strict"
# module: two.rego
package gate

settings.mode.level := 3
