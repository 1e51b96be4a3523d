import type { ComponentChildren } from "preact";

/**
 * A labelled input with its hint and its problem right beside it: the problem is announced
 * (aria-describedby + aria-invalid on the input, role=alert on the message), the hint is not repeated.
 */
export function Field({
  id,
  label,
  hint,
  problem,
  children,
}: {
  id: string;
  label: string;
  hint?: string;
  problem?: string | null;
  children: ComponentChildren;
}) {
  return (
    <div class={`field${problem ? " invalid" : ""}`}>
      <label for={id}>{label}</label>
      {children}
      {problem ? (
        <p class="field-problem" id={`${id}-problem`} role="alert">
          {problem}
        </p>
      ) : (
        hint && (
          <p class="field-hint" id={`${id}-hint`}>
            {hint}
          </p>
        )
      )}
    </div>
  );
}

/** The aria attributes an input inside a Field needs. */
export function fieldAria(id: string, problem: string | null | undefined, hint?: string) {
  return {
    "aria-invalid": problem ? true : undefined,
    "aria-describedby": problem ? `${id}-problem` : hint ? `${id}-hint` : undefined,
  };
}
