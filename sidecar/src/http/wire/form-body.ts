import { SidecarError } from '../../core/errors.ts'
import { readBoundedBody } from '../../core/bounded-body.ts'

const formType = 'application/x-www-form-urlencoded'

/**
 * An `application/x-www-form-urlencoded` request body of at most `limit` bytes: 415 for another
 * content type, 413 when larger (refused from `Content-Length` before reading, else while reading a
 * chunked body, which Go adal sends), 400 for a field given twice.
 */
export async function readFormBody(request: Request, limit: number): Promise<FormFields> {
  const type = request.headers.get('content-type')?.split(';')[0]?.trim().toLowerCase()
  if (type !== formType) {
    await request.body?.cancel().catch(() => {})
    throw new SidecarError(
      'unsupported_media_type',
      `The request body must be ${formType} (got ${type ? `"${type.slice(0, 80)}"` : 'no Content-Type'})`,
    )
  }
  const body = await readBoundedBody(request.body, request.headers.get('content-length'), limit, () =>
    tooLarge(limit),
  )
  return formFields(new URLSearchParams(body.toString('utf8')))
}

/** One value per field; a repeated field is ambiguous and refused, as a repeated query parameter is. */
export interface FormFields {
  get(name: string): string | undefined
}

function formFields(params: URLSearchParams): FormFields {
  return {
    get(name) {
      const values = params.getAll(name)
      if (values.length > 1)
        throw new SidecarError('invalid_request', `Form field "${name}" is given more than once`)
      return values[0]
    },
  }
}

function tooLarge(limit: number): SidecarError {
  return new SidecarError('payload_too_large', `The request body is larger than ${limit} bytes`)
}
