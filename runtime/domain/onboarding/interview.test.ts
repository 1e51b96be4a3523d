import { describe, expect, it } from "vitest";
import { draftFrom, type InterviewAnswers, permissionProfile } from "./interview.ts";

const base: InterviewAnswers = {
  project: { name: "app", source: "new" },
  goal: "A todo app",
  stack: "Node",
  runCommand: "npm run dev",
  testCommand: "npm test",
  permissions: { edit: false, commands: "ask", git: "ask", web: false },
};

describe("permissionProfile", () => {
  it("allows only reading when the user wants to be asked about everything", () => {
    const p = permissionProfile(base);
    expect(p.allow).not.toContain("Edit");
    expect(p.allow.some((r) => r.startsWith("Bash(npm"))).toBe(false);
    expect(p.deny).toEqual(
      expect.arrayContaining([
        "Read(./.env)",
        "Bash(sudo:*)",
        "Bash(git push:*)",
        "Bash(git push --force:*)",
        "WebFetch",
      ]),
    );
  });

  it("opens exactly what the answers allow", () => {
    const project = permissionProfile({
      ...base,
      permissions: { edit: true, commands: "project", git: "push", web: true },
    });
    expect(project.allow).toEqual(
      expect.arrayContaining([
        "Edit",
        "Bash(npm run dev:*)",
        "Bash(npm test:*)",
        "Bash(git push:*)",
        "WebFetch",
      ]),
    );
    expect(project.allow).not.toContain("Bash");
    expect(project.deny).not.toContain("Bash(git push:*)");
    expect(project.deny).toContain("Bash(git push --force:*)"); // never, whatever the answers
    const any = permissionProfile({
      ...base,
      permissions: { edit: true, commands: "any", git: "commit", web: false },
    });
    expect(any.allow).toEqual(expect.arrayContaining(["Bash", "Bash(git commit:*)"]));
  });
});

describe("draftFrom", () => {
  it("keeps CLAUDE.md short and importing the generated brief, which carries the answers", () => {
    const d = draftFrom({ ...base, conventions: "Tabs.", personal: "Be brief." });
    expect(d.claudeMd.split("\n").length).toBeLessThan(10);
    expect(d.claudeMd).toContain("@.claude/berth-generated.md");
    for (const text of ["A todo app", "Node", "`npm test`", "Tabs.", "Ask before editing files."])
      expect(d.generated).toContain(text);
    expect(d.personal).toContain("Be brief.");
    expect(draftFrom(base).personal).toBeNull();
  });
});
