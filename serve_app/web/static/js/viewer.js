// The 3D viewer: three.js renders a GLB with orbit controls, only when something changed.

import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";

/** True when the browser can create a WebGL context. */
export function webglAvailable() {
  try {
    const canvas = document.createElement("canvas");
    return Boolean(canvas.getContext("webgl2") || canvas.getContext("webgl"));
  } catch {
    return false;
  }
}

export class ModelViewer {
  /** Fill `container` with a canvas; `container` decides the size. */
  constructor(container) {
    this.container = container;
    this.renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2));
    this.renderer.outputColorSpace = THREE.SRGBColorSpace;
    const canvas = this.renderer.domElement;
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", "3D view of the model: drag to rotate, scroll to zoom");
    canvas.tabIndex = 0;
    container.append(canvas);

    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(0xe9edf2);
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x8d8d8d, 2.2));
    const key = new THREE.DirectionalLight(0xffffff, 2.0);
    key.position.set(1, 2, 3);
    this.scene.add(key);
    const rim = new THREE.DirectionalLight(0xffffff, 0.8);
    rim.position.set(-2, 1, -2);
    this.scene.add(rim);

    this.camera = new THREE.PerspectiveCamera(40, 1, 0.01, 1000);
    this.camera.position.set(0, 0, 3);
    this.controls = new OrbitControls(this.camera, canvas);
    this.controls.addEventListener("change", () => this.render());
    this.model = null;

    this.resizeObserver = new ResizeObserver(() => this.resize());
    this.resizeObserver.observe(container);
    this.resize();
  }

  resize() {
    const { clientWidth: width, clientHeight: height } = this.container;
    if (!width || !height) return;
    this.renderer.setSize(width, height, false);
    this.camera.aspect = width / height;
    this.camera.updateProjectionMatrix();
    this.render();
  }

  render() {
    this.renderer.render(this.scene, this.camera);
  }

  /** Load the GLB at `url` (sending `headers`), replace the shown model and frame it. */
  async load(url, headers = {}) {
    const gltf = await new GLTFLoader().setRequestHeader(headers).loadAsync(url);
    this.clear();
    this.model = gltf.scene;
    this.scene.add(this.model);
    this.frame(this.model);
    return this.model;
  }

  /** Centre `object` at the origin and put the camera where it fits the view. */
  frame(object) {
    const box = new THREE.Box3().setFromObject(object);
    const size = box.getSize(new THREE.Vector3());
    object.position.sub(box.getCenter(new THREE.Vector3()));
    const radius = Math.max(size.length() / 2, 1e-6);
    const fov = THREE.MathUtils.degToRad(this.camera.fov);
    const distance = (radius / Math.sin(fov / 2)) * 1.1;
    const direction = new THREE.Vector3(0.35, 0.25, 1).normalize();
    this.camera.position.copy(direction.multiplyScalar(distance));
    this.camera.near = distance / 100;
    this.camera.far = distance * 100;
    this.camera.updateProjectionMatrix();
    this.controls.target.set(0, 0, 0);
    this.controls.minDistance = radius * 0.2;
    this.controls.maxDistance = distance * 10;
    this.controls.update();
    this.render();
  }

  clear() {
    if (!this.model) return;
    this.scene.remove(this.model);
    this.model.traverse((node) => {
      if (!node.isMesh) return;
      node.geometry.dispose();
      for (const material of [node.material].flat()) {
        for (const value of Object.values(material)) {
          if (value && value.isTexture) value.dispose();
        }
        material.dispose();
      }
    });
    this.model = null;
    this.render();
  }
}
