export type Substitution =
  | { ok: true; value: string; /** Set when the whole scalar was one `${NAME}`. */ wholeVariable?: string }
  | { ok: false; message: string }

const variableName = /^[A-Za-z_][A-Za-z0-9_]*$/
const wholeReference = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/

/**
 * Replaces every `${NAME}` in `text` with the environment variable's value; `$${` is a literal
 * `${`. A variable that is not set is an error rather than an empty string, because an empty
 * secret or path fails much later and much less clearly.
 */
export function substituteEnv(text: string, env: NodeJS.ProcessEnv): Substitution {
  const missing: string[] = []
  let out = ''
  let index = 0
  while (index < text.length) {
    const dollar = text.indexOf('$', index)
    if (dollar < 0) {
      out += text.slice(index)
      break
    }
    out += text.slice(index, dollar)
    if (text.startsWith('$${', dollar)) {
      out += '${'
      index = dollar + 3
      continue
    }
    if (!text.startsWith('${', dollar)) {
      out += '$'
      index = dollar + 1
      continue
    }
    const close = text.indexOf('}', dollar + 2)
    if (close < 0) return { ok: false, message: 'unterminated ${ (write $${ for a literal ${)' }
    const name = text.slice(dollar + 2, close)
    if (!variableName.test(name)) {
      return {
        ok: false,
        message: `\${${name}} is not a valid environment variable reference (names are letters, digits and _; write $\${ for a literal \${)`,
      }
    }
    const value = env[name]
    if (value === undefined) missing.push(name)
    else out += value
    index = close + 1
  }
  if (missing.length === 1) return { ok: false, message: `environment variable ${missing[0]} is not set` }
  if (missing.length > 1)
    return { ok: false, message: `environment variables ${missing.join(', ')} are not set` }
  const whole = wholeReference.exec(text)?.[1]
  return whole === undefined ? { ok: true, value: out } : { ok: true, value: out, wholeVariable: whole }
}
